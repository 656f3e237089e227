"""Bulk inserts (binary COPY on PostgreSQL, executemany on SQLite) store exactly the values,
and a violated key is SQLAlchemy's IntegrityError on both backends."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from conftest import Api
from transactive.service.db import bulk_insert, bulk_insert_arrays, open_database
from transactive.service.models import Award, JournalNode


def test_arrays_round_trip_bit_for_bit_and_duplicates_are_integrity_errors(db_url: str) -> None:
    db = open_database(db_url)
    seq = np.array([1, 2**53 + 1, 2**62, 7], dtype=np.int64)
    kw = np.array([-0.0, 1e-308, -1.7976931348623157e308, 0.1 + 0.2])
    price = np.array([0.25, -3.5, 5e-324, 1 / 3])
    try:
        with db.sessions() as s:
            bulk_insert_arrays(s, "awards", {"bid_seq": seq, "award_kw": kw, "price": price,
                                             "amount": kw * price})  # fmt: skip
            s.commit()
        with db.sessions() as s:
            got = s.execute(select(Award.bid_seq, Award.award_kw, Award.price, Award.amount)
                            .order_by(Award.bid_seq)).all()  # fmt: skip
        order = np.argsort(seq)
        assert [r[0] for r in got] == seq[order].tolist()
        for col, want in ((1, kw), (2, price), (3, kw * price)):
            stored = np.array([r[col] for r in got])
            assert np.array_equal(stored, want[order])  # exact (SQLite keeps no signed zero)
        with db.sessions() as s, pytest.raises(IntegrityError):
            bulk_insert_arrays(s, "awards", {"bid_seq": seq[:1], "award_kw": kw[:1],
                                             "price": kw[:1], "amount": kw[:1]})  # fmt: skip
        with db.sessions() as s, pytest.raises(TypeError, match=r"awards\.bid_seq"):
            bulk_insert_arrays(s, "awards", {"bid_seq": seq.astype(np.int32), "award_kw": kw,
                                             "price": kw, "amount": kw})  # fmt: skip
        with db.sessions() as s:
            bulk_insert(s, "journal_nodes", ("node", "hash"), [(5, b"\x00" * 32), (9, b"\xff")])
            s.commit()
            assert s.scalars(select(JournalNode.hash).order_by(JournalNode.node)).all() == [
                b"\x00" * 32,
                b"\xff",
            ]
        with db.sessions() as s, pytest.raises(IntegrityError):
            bulk_insert(s, "journal_nodes", ("node", "hash"), [(5, b"x")])
    finally:
        db.dispose()


def test_reads_go_on_while_a_writer_holds_the_database(api: Api) -> None:
    """A GET takes no write lock: it is answered while another transaction holds one (on
    SQLite it would otherwise wait for the busy timeout and fail)."""
    who = api.party("reader", "participant", area=next(iter(api.services.market.areas)))
    with api.services.db.sessions() as writer:
        writer.execute(text("SELECT 1"))  # SQLite: BEGIN IMMEDIATE, the write lock is held
        assert writer.in_transaction()
        r = api.get("/v1/sessions", who, params={"limit": 5})
        assert r.status_code == 200, r.text
        assert api.get("/v1/parties", who).status_code == 200
        writer.rollback()
