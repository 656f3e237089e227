"""Thin HTTP routers over the service layer; each module is one resource family."""
