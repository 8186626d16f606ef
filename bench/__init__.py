"""Side-by-side benchmarks: each workload module times chaingrad against a baseline."""
