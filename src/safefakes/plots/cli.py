"""Sub-commands of the plots stage: the paper's detector figures."""

from __future__ import annotations

import argparse


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--detector", required=True, help="detector name shown in the title (dsfd, tinaface, faster_rcnn)")
    parser.add_argument("--result", action="append", required=True, metavar="METHOD[@ITER]=JSON", help="an evaluation JSON; repeat")
    parser.add_argument("--out-png", required=True, help="figure to write")
    parser.add_argument("--out-csv", required=True, help="the table behind the figure")


def _fig4(args: argparse.Namespace) -> int:
    from safefakes.plots.figures import parse_result_arguments, plot_fig4, results_table

    table = results_table(parse_result_arguments(args.result, default_iterations=args.iterations))
    plot_fig4(table, args.detector, args.out_png, args.out_csv)
    return 0


def _fig6(args: argparse.Namespace) -> int:
    from safefakes.plots.figures import parse_result_arguments, plot_fig6, results_table

    table = results_table(parse_result_arguments(args.result))
    plot_fig6(table, args.detector, args.out_png, args.out_csv)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``plot-fig4`` and ``plot-fig6``."""
    fig4 = subparsers.add_parser("plot-fig4", help="Fig. 4: AP per difficulty for each anonymization method")
    _add_common(fig4)
    fig4.add_argument("--iterations", type=int, default=None, help="training iterations of METHOD=JSON entries")
    fig4.set_defaults(func=_fig4)
    fig6 = subparsers.add_parser("plot-fig6", help="Fig. 6: AP against detector training iterations")
    _add_common(fig6)
    fig6.set_defaults(func=_fig6)
