// Command controlplane is one multi-call binary holding the real Kubernetes control plane used by
// the project's tests and demo: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
// (all from their upstream Go modules at the versions pinned in go.mod), kwok, which simulates
// nodes and kubelets so that pods reach Running without a container runtime, and kubectl at the
// same Kubernetes version as the API server.
//
// The component is chosen by the first argument, or by the name the binary is called under
// (a symlink named kube-apiserver runs the API server), as the old hyperkube did:
//
//	controlplane kube-apiserver --etcd-servers=... --secure-port=...
//	controlplane kwok-stages > stages.yaml
//	controlplane kubectl --kubeconfig=... get nodes
//
// The Python side (reconciler/localcluster) builds this binary once per pin and starts each
// component as its own process. One binary links the shared Kubernetes code once, which keeps
// the cold build and the cache small on a 2-core machine.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	_ "time/tzdata" // time zones for CronJob, as the upstream mains do

	"go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl's client auth plugins, as upstream
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format, as upstream
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream
	kversion "k8s.io/component-base/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	"github.com/spf13/pflag"
	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodelease "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	kwokconfig "sigs.k8s.io/kwok/pkg/config"
	kwokcmd "sigs.k8s.io/kwok/pkg/kwok/cmd"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/kwok/pkg/utils/signals"
)

// components maps a component name to its entry point. Each entry point sees os.Args as if it
// were its own binary: os.Args[0] is the component name and the rest are its flags.
var components = map[string]func() int{
	"etcd": func() int {
		etcdmain.Main(os.Args)
		return 0
	},
	"kube-apiserver": func() int {
		return cli.Run(apiserver.NewAPIServerCommand())
	},
	"kube-controller-manager": func() int {
		return cli.Run(controllermanager.NewControllerManagerCommand())
	},
	"kube-scheduler": func() int {
		return cli.Run(scheduler.NewSchedulerCommand())
	},
	"kubectl":     runKubectl,
	"kwok":        runKwok,
	"kwok-stages": printKwokStages,
	"version":     printVersion,
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := components[name]; !ok {
		if len(os.Args) < 2 {
			usage()
			os.Exit(2)
		}
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	run, ok := components[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "controlplane: unknown component %q\n", name)
		usage()
		os.Exit(2)
	}
	os.Exit(run())
}

func usage() {
	names := make([]string, 0, len(components))
	for n := range components {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: controlplane {%s} [flags...]\n", strings.Join(names, "|"))
}

// runKubectl is upstream's kubectl main (k8s.io/kubernetes/cmd/kubectl/kubectl.go at the pinned
// version) behind the multi-call switch.
func runKubectl() int {
	// As for kwok: cobra adds pflag.CommandLine to the root command, and packages linked into this
	// binary for the other components register flags there (verflag's --version). The kubectl
	// binary registers none (kubectl's own sanity check forbids it), so start from an empty set.
	pflag.CommandLine = pflag.NewFlagSet(os.Args[0], pflag.ExitOnError)

	// Upstream: parse the verbosity by hand so klog works while the command is being built
	// (plugins, .kuberc); the real flag parsing happens inside cli.RunNoErrOutput.
	logs.GlogSetter(kubectlcmd.GetLogVerbosity(os.Args)) // nolint:errcheck
	command := kubectlcmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// Pretty-print the error and exit with an error (CheckErr exits non-zero itself).
		kubectlutil.CheckErr(err)
	}
	return 0
}

// runKwok is kwok's own main (sigs.k8s.io/kwok/cmd/kwok) behind the multi-call switch.
func runKwok() int {
	// Cobra adds pflag.CommandLine to every root command. The Kubernetes packages linked into
	// this binary register a --version flag there (component-base/version/verflag) that breaks
	// kwok's own --version, so kwok starts from an empty global flag set, as in its own binary.
	pflag.CommandLine = pflag.NewFlagSet(os.Args[0], pflag.ExitOnError)

	flagset := pflag.NewFlagSet("global", pflag.ContinueOnError)
	flagset.ParseErrorsAllowlist.UnknownFlags = true
	flagset.Usage = func() {}

	ctx := signals.SetupSignalContext()
	ctx, logger := kwoklog.InitFlags(ctx, flagset)
	ctx, err := kwokconfig.InitFlags(ctx, flagset)
	if err != nil {
		logger.Error("Init config flags", "err", err)
		return 1
	}
	command := kwokcmd.NewCommand(ctx)
	command.PersistentFlags().AddFlagSet(flagset)
	if err := command.ExecuteContext(ctx); err != nil {
		logger.Error("Execute exit", "err", err)
		return 1
	}
	return 0
}

// printKwokStages writes kwok's default stages (the ones kwokctl uses: nodes become Ready and
// keep a lease; pods become Running, complete, and go away on delete) as one multi-document YAML,
// to be passed to `controlplane kwok --config`.
func printKwokStages() int {
	docs := []string{
		nodefast.DefaultNodeInit,
		nodelease.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady,
		podfast.DefaultPodComplete,
		podfast.DefaultPodDelete,
	}
	for i, d := range docs {
		if i > 0 {
			fmt.Println("---")
		}
		fmt.Print(strings.TrimRight(d, "\n") + "\n")
	}
	return 0
}

func printVersion() int {
	fmt.Println(kversion.Get().GitVersion)
	return 0
}
