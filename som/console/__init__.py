"""The operator console: a server-rendered web application on the same views and command paths as the CLI."""
