"""``python -m petl_analysis``: the command line, as ``petl-analyze`` (:mod:`petl_analysis.cli`)."""

from petl_analysis.cli.main import main

if __name__ == "__main__":
    main()
