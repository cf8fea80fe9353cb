"""The reviewers' loop (issue 6): the review web app, reviewer tokens, verdicts exported as
training data, model versions with champion/challenger promotion, and hot reload."""
