"""``worldservice world …``: the operators' CLI. It talks to a running daemon over its HTTP API only;
the one thing it reads from the daemon's code is the configuration file's shape (for the URL and a
service token), so it can run on a machine that only has the config file."""
