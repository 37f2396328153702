from netdumplings import DumplingChef


class OnlyABase(DumplingChef):
    assignable_to_kitchen = False
