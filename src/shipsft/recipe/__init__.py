"""recipe/: a starting config chosen by the data (`shipsft init`).

    starter.py   read the data (format, answers, lengths), split off an eval set when none is given (stratified by
                 the answers' label, written to files once), choose method / max_length / batch / epochs / LR /
                 metrics / gates with a reason each, and write the config as commented YAML

Why a part of its own: it composes what data/ measures, what steps/resolve.py resolves from `auto` (the same
function training calls, so `shipsft init` and `shipsft train` never disagree) and the eval metric names, which no
single one of those parts may import; cli/ stays a thin layer over it.

May import: `shipsft.config`, `shipsft.errors`, `shipsft.data`, `shipsft.model` (the tokenizer and its width) and
`shipsft.steps` (resolve); never train/ or cli/ (tests/test_architecture.py).
"""
