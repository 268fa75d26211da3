//go:build tools

// Package tools pins volcano's scheduler and controller manager in this module so that
// `go build` of their main packages resolves them with volcano's own replace directives
// (copied into go.mod), which `go install volcano.sh/volcano/cmd/...@version` refuses.
package tools

import (
	_ "volcano.sh/volcano/cmd/controller-manager"
	_ "volcano.sh/volcano/cmd/scheduler"
)
