"""The client side: the local ``Endpoint`` executor (and, later, the service ``Client``)."""
