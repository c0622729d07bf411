"""ftkit's compact RL core (issue #4): the algorithms first, as pure functions tested by hand."""
