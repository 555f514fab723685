"""(being written)"""


def install(app) -> None:
    pass
