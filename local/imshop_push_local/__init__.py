"""Local stand-ins (IMSHOP sandbox, runners) so tests and `make demo` need no network or AWS account."""
