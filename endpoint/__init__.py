"""The endpoint daemon: an endpoint registered with a service, run on the user's machine.

``endpoint.cli`` is ``fabric endpoint configure|start|stop|list|status`` (and ``run-local``,
the demo in ``endpoint.demo``); ``endpoint.home`` is an endpoint's folder under
``fabric_home()`` (settings, registration, pid file); ``endpoint.daemon`` runs the
endpoint's interchange (``python -m endpoint.daemon DIR``). Not to be confused with
``sdk.endpoint.Endpoint``, a local endpoint without a service.
"""
