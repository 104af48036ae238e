"""The cloud service: REST API (Flask, served by waitress), store (SQLite) and forwarder.

Users and SDK clients speak HTTP to ``service.app``; endpoints' interchanges connect out to
``service.forwarder`` over CurveZMQ; both share one ``service.store``. ``service.server``
runs them in one process and ``service.cli`` is ``fabric service ...``. Nothing here ever
deserializes a user payload: functions, arguments and results are opaque bytes.
"""
