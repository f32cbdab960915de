"""long-poll: a long-polling HTTP server and client, frozen into one static executable."""

__version__ = "0.1.0"
