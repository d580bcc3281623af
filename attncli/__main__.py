"""The process's entry, for ``attncli`` and ``python -m attncli``: the collector's settings, then the CLI."""

import gc


def run() -> None:
    """Run the attncli command line of this process's arguments."""
    # A call makes many small objects and few cycles (JSON documents, arrays, options), yet the
    # cyclic collector, run every 700 allocations, walks again and again the objects the imports
    # made, and all of them once more at exit: about a tenth of a small call and of a JSON Lines
    # stream (benchmarks/startup.py). So its youngest generation is collected every 100,000
    # allocations, and what the command line's imports made (Typer's, attncli's) is frozen out of
    # every collection: it lives until exit anyway. The older generations keep their default
    # ratios. A stream's bad lines leave no cycles behind (attncli.stream drops their errors'
    # tracebacks), so its memory stays that of a chunk. Only the process's entry does this: a
    # program that imports attncli keeps its own collector.
    gc.set_threshold(100_000, 10, 10)
    from attncli.cli import main

    gc.freeze()
    main()


if __name__ == "__main__":
    run()
