"""Work chains and the calcfunctions that create every new node of a campaign."""
