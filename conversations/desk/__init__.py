"""The receptionist's desk: the live inbox and the conversation page (views, selectors, services)."""
