module mlext.local/benchmarks/router/loadgen

go 1.22
