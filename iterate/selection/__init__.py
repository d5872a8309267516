"""Selection pieces, each small and composable (scores → diversity → balance), combined by the strategies in the
registry (:mod:`iterate.selection.strategies`); `iterate.loop.select` runs them on the pool."""
