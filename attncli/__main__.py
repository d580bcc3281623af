"""The process's entry, for ``attncli`` and ``python -m attncli``: the collector's settings, then the CLI."""

import gc


def run() -> None:
    """Run the attncli command line of this process's arguments."""
    # A call makes many small objects and almost no cycles (JSON documents, arrays, options), yet
    # the cyclic collector, run every 700 allocations, walks again and again the objects Typer and
    # numpy make at import, and all of them once more at exit: about a tenth of a small call and of
    # a JSON Lines stream (benchmarks/startup.py). So it runs rarely, and never over the modules'
    # objects, which live until exit anyway. The older generations keep their default ratios, so a
    # long stream's garbage cycles (a bad line's error and its frame) are still collected: its
    # memory levels off (about 20 MB more than with the defaults). Only the process's entry does
    # this: a program that imports attncli keeps its own collector.
    gc.set_threshold(100_000, 10, 10)
    from attncli.cli import main

    gc.freeze()
    main()


if __name__ == "__main__":
    run()
