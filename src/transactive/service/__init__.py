"""The live market service: an HTTP API over a real database (docs/service.md).

Layers, one way: ``routers/`` (thin FastAPI endpoints) → service modules (``intake``,
``scheduler``, ``clearing``, ``metering``, ``settling``, …) → ``models`` (SQLAlchemy tables)
and the engine (``transactive.market``, ``transactive.settlement``). ``app.create_app`` wires
them; ``config.ServiceConfig`` is the one validated configuration.
"""
