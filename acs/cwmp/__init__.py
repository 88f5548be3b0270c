"""Sans-IO CWMP protocol core: SOAP codec, RPC messages and the session state machine.

Nothing in this package imports Twisted, opens sockets, reads the clock or touches SQL.
"""
