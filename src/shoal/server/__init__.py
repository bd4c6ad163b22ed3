"""The proxy: accounts, permissions, conversations over REST, websockets and /v1."""
