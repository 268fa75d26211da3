module mlext.local/benchmarks/router/backend

go 1.22
