"""The ``petl-analyze`` command line (installed as ``petl_analysis.cli``). Thin: every command calls the library."""
