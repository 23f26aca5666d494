from pacore.backends.base import Backend, RequestCounter

__all__ = ["Backend", "RequestCounter"]
