"""The client side: the local ``Endpoint``, and the service's ``Client`` and ``Executor``."""
