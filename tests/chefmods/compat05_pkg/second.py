from netdumplings import DumplingChef


class SecondCompatChef(DumplingChef):
    def packet_handler(self, packet):
        return None


class HiddenCompatChef(DumplingChef):
    assignable_to_kitchen = False
