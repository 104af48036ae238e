"""The cloud service (Flask app, store, forwarder): not built yet."""
