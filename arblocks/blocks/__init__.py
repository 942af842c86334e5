"""Built-in blocks. Each module is a plugin registered through the same hook as third-party plugins."""
