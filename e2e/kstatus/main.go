// Command kstatus computes the kstatus of one Kubernetes object read as JSON
// from stdin, with the library Flux and kpt use (sigs.k8s.io/cli-utils), and
// prints {"status": ..., "message": ...}. The e2e tests run it on live wib
// objects to prove Flux reads them right.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	// Kubernetes' JSON decoding, so integers are int64 as kstatus expects.
	var object map[string]interface{}
	if err := kjson.Unmarshal(data, &object); err != nil {
		fail(err)
	}
	result, err := status.Compute(&unstructured.Unstructured{Object: object})
	if err != nil {
		fail(err)
	}
	out, err := json.Marshal(map[string]string{
		"status":  result.Status.String(),
		"message": result.Message,
	})
	if err != nil {
		fail(err)
	}
	fmt.Println(string(out))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(2)
}
