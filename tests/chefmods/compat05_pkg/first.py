from netdumplings import DumplingChef


class FirstCompatChef(DumplingChef):
    def interval_handler(self, interval=None):
        return {"first": interval}
