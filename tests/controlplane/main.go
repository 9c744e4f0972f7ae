// Command controlplane is one multi-call binary holding a Kubernetes control plane for tests, as k3s
// holds its components in one binary: kube-apiserver, kube-controller-manager, kube-scheduler, kine
// (k3s's etcd shim, SQLite backend) and kwok (plays the kubelet: Nodes Ready, pods Running, no
// container runtime). It is only glue: each component runs from its own upstream command
// constructor, exactly as that component's own main package does (k8s.io/kubernetes/cmd/*/main.go,
// github.com/k3s-io/kine's main.go, sigs.k8s.io/kwok/cmd/kwok/main.go).
//
// The component is chosen by the name the binary is called by (a symlink named kube-apiserver,
// ...) or, failing that, by the first argument: `controlplane kube-apiserver --flags...`.
// scripts/controlplane.sh builds and starts it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	_ "time/tzdata" // CronJob time zones, as the upstream mains import it

	"github.com/k3s-io/kine/pkg/app"
	"github.com/sirupsen/logrus"
	"github.com/spf13/pflag"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json, as upstream mains
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics, as upstream mains
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric, as upstream mains
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	kwokconfig "sigs.k8s.io/kwok/pkg/config"
	kwokcmd "sigs.k8s.io/kwok/pkg/kwok/cmd"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	kwoksignals "sigs.k8s.io/kwok/pkg/utils/signals"
)

var components = map[string]func() int{
	"kube-apiserver":          func() int { return cli.Run(apiserver.NewAPIServerCommand()) },
	"kube-controller-manager": func() int { return cli.Run(controllermanager.NewControllerManagerCommand()) },
	"kube-scheduler":          func() int { return cli.Run(scheduler.NewSchedulerCommand()) },
	"kine":                    runKine,
	"kwok":                    runKwok,
	"kwok-stages":             printKwokStages,
}

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := components[name]; !ok {
		if len(os.Args) < 2 {
			usage()
		}
		name = os.Args[1]
		if _, ok := components[name]; !ok {
			usage()
		}
		// Every component (and kwok's and kine's own flag parsing) reads os.Args[1:] as its
		// arguments: drop the dispatch word so each sees what its own binary would.
		os.Args = append([]string{name}, os.Args[2:]...)
	}
	os.Exit(components[name]())
}

func usage() {
	names := make([]string, 0, len(components))
	for n := range components {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(os.Stderr, "usage: %s COMPONENT [flags]\ncomponents: %v\n", filepath.Base(os.Args[0]), names)
	os.Exit(2)
}

// runKine runs kine's urfave/cli app as kine's main does; a cancelled context is a clean stop.
func runKine() int {
	if err := app.New().Run(os.Args); err != nil && !errors.Is(err, context.Canceled) {
		logrus.Error(err)
		return 1
	}
	return 0
}

// runKwok follows sigs.k8s.io/kwok/cmd/kwok: kwok reads its logging and configuration flags from a
// separate, lenient flag set before the cobra command parses the rest.
func runKwok() int {
	// The Kubernetes packages linked into this binary register their own global flags at init
	// (component-base's --version among them), which cobra would merge into kwok's command and
	// clash with kwok's own --version: kwok starts from an empty global flag set, as in its binary.
	pflag.CommandLine = pflag.NewFlagSet(os.Args[0], pflag.ExitOnError)
	flags := pflag.NewFlagSet("global", pflag.ContinueOnError)
	flags.ParseErrorsAllowlist.UnknownFlags = true
	flags.Usage = func() {}
	ctx := kwoksignals.SetupSignalContext()
	ctx, logger := kwoklog.InitFlags(ctx, flags)
	ctx, err := kwokconfig.InitFlags(ctx, flags)
	if err != nil {
		logger.Error("kwok config flags", "err", err)
		return 1
	}
	command := kwokcmd.NewCommand(ctx)
	command.PersistentFlags().AddFlagSet(flags)
	if err := command.ExecuteContext(ctx); err != nil {
		logger.Error("kwok", "err", err)
		return 1
	}
	return 0
}

// printKwokStages prints the Stages kwok needs to play a kubelet, as one YAML stream for kwok's
// --config. A standalone kwok has none built in ("No node stages found"); these are the defaults
// kwokctl gives its own clusters (pkg/kwokctl/runtime/cluster.go: node-initialize, heartbeat with
// a lease, pod ready/complete/delete), taken from the module's embedded files, not rewritten here.
// kwok's "kwok in a cluster" docs: kwok does nothing until Stages are configured (stage-fast).
func printKwokStages() int {
	for _, doc := range []string{nodefast.DefaultNodeInit, nodeheartbeat.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady, podfast.DefaultPodComplete, podfast.DefaultPodDelete} {
		fmt.Printf("---\n%s\n", strings.TrimSpace(doc))
	}
	return 0
}
