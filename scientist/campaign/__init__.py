"""Discovery campaigns: the loop that proposes, evaluates, archives and selects."""
