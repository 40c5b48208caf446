// Command kstatus prints what kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status), the library Flux's
// health checks and `kubectl wait`-style tooling use, computes for one Kubernetes object.
//
//	kstatus < object.(json|yaml)
//	{"status":"Current","message":"Resource is current"}
//
// Exit status: 0 when a status was computed (whatever it is), 1 on unreadable input or a
// computation error (the message names what is wrong).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type output struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: kstatus < object.json|object.yaml (one Kubernetes object on stdin; no arguments)")
		os.Exit(1)
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	// YAML is a superset of JSON; sigs.k8s.io/yaml converts it to JSON the way kubectl does.
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("stdin is neither JSON nor YAML: %w", err)
	}
	// The unstructured JSON decoder gives numbers as int64/float64, exactly as an API client sees them.
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return fmt.Errorf("stdin is not one Kubernetes object: %w", err)
	}
	res, err := status.Compute(u)
	if err != nil {
		return fmt.Errorf("status.Compute: %w", err)
	}
	enc := json.NewEncoder(out)
	return enc.Encode(output{Status: res.Status.String(), Message: res.Message})
}
