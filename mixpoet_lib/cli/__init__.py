"""The ``mixpoet`` command line: one module per sub-command, assembled in :mod:`mixpoet_lib.cli.app`."""
