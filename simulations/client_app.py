"""The OTM ClientApp for ``flwr run .`` (one agent per SuperNode)."""

from clients.app import build_client_app

app = build_client_app()
