"""The chat views, one module per concern; chats/urls.py names each module, so a URL leads to its view in one hop.

What they share lives beside the models in chats/http.py: no view module imports another.
"""
