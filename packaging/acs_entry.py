"""The single-file executable's entry point: PyInstaller runs this file as ``__main__``.

The reactor is installed by name before anything imports ``twisted.internet.reactor``:
frozen, Twisted's plugin discovery (``dropin.cache``) finds nothing, and which reactor
runs the appliance is not left to a guess. ``acs`` with its usual subcommands follows,
``acs sim`` among them (the simulator, as ``cpe-sim``).
"""

import sys

from twisted.internet import epollreactor

epollreactor.install()

from acs.cli import main  # noqa: E402 (after the reactor, on purpose)

sys.exit(main())
