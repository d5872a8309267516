"""Selection pieces, each small and composable (score → diversity → balance); `iterate.select` runs the loop."""
