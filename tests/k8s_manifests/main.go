// Command k8s_manifests checks Kubernetes manifests against Kubernetes' own API types
// (k8s.io/api): every document of every file is decoded strictly into the Go type of its
// apiVersion and kind, so an unknown or misspelled field, a wrong type or an unknown kind
// is an error. Run by tests/kubernetes.rs.
//
//	go run . FILE...            check; prints "FILE: ok (N documents)" per file
//	go run . -env FILE...       also prints every CREDITSTREAM__ variable a container gets,
//	                            as NAME=VALUE (envFrom ConfigMaps and Secrets resolved from
//	                            the same files, fieldRefs as <fieldPath>), under a line
//	                            "[Kind/name replicas=N]" per workload
package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// typed returns an empty value of the API type for apiVersion and kind.
func typed(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}, nil
	case "batch/v1/Job":
		return &batchv1.Job{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	}
	return nil, fmt.Errorf("unknown apiVersion/kind %s/%s", apiVersion, kind)
}

// documents splits a YAML stream on its "---" separator lines.
func documents(text []byte) [][]byte {
	var docs [][]byte
	for _, part := range bytes.Split(append([]byte("\n"), text...), []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(part))) > 0 {
			docs = append(docs, part)
		}
	}
	return docs
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// decode decodes one document strictly into its API type.
func decode(doc []byte) (any, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return nil, err
	}
	obj, err := typed(head.APIVersion, head.Kind)
	if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", head.Kind, err)
	}
	return obj, nil
}

func load(files []string, report io.Writer) ([]any, error) {
	var objects []any
	var problems []string
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		docs := documents(text)
		ok := true
		for i, doc := range docs {
			obj, err := decode(doc)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: document %d: %v", file, i+1, err))
				ok = false
				continue
			}
			objects = append(objects, obj)
		}
		if ok {
			fmt.Fprintf(report, "%s: ok (%d documents)\n", file, len(docs))
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}
	return objects, nil
}

// workload is a pod template and what runs it: "Kind/name" and its replica count (1 for a Job).
type workload struct {
	name     string
	replicas int32
	spec     corev1.PodSpec
}

func replicas(n *int32) int32 {
	if n == nil {
		return 1
	}
	return *n
}

func workloads(objects []any) []workload {
	var found []workload
	for _, obj := range objects {
		switch o := obj.(type) {
		case *appsv1.Deployment:
			found = append(found, workload{"Deployment/" + o.Name, replicas(o.Spec.Replicas), o.Spec.Template.Spec})
		case *appsv1.StatefulSet:
			found = append(found, workload{"StatefulSet/" + o.Name, replicas(o.Spec.Replicas), o.Spec.Template.Spec})
		case *batchv1.Job:
			found = append(found, workload{"Job/" + o.Name, 1, o.Spec.Template.Spec})
		}
	}
	return found
}

// printEnv prints every CREDITSTREAM__ variable of every container, resolved.
func printEnv(w io.Writer, objects []any) error {
	configMaps := map[string]map[string]string{}
	secrets := map[string]map[string]string{}
	for _, obj := range objects {
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			configMaps[o.Name] = o.Data
		case *corev1.Secret:
			secrets[o.Name] = o.StringData
		}
	}
	for _, wl := range workloads(objects) {
		fmt.Fprintf(w, "[%s replicas=%d]\n", wl.name, wl.replicas)
		for _, c := range wl.spec.Containers {
			for _, from := range c.EnvFrom {
				if from.ConfigMapRef == nil {
					continue
				}
				data, found := configMaps[from.ConfigMapRef.Name]
				if !found {
					return fmt.Errorf("container %s: ConfigMap %s is not in the manifests", c.Name, from.ConfigMapRef.Name)
				}
				for name, value := range data {
					fmt.Fprintf(w, "%s=%s\n", name, value)
				}
			}
			for _, env := range c.Env {
				value := env.Value
				if ref := env.ValueFrom; ref != nil {
					switch {
					case ref.FieldRef != nil:
						value = "<" + ref.FieldRef.FieldPath + ">"
					case ref.SecretKeyRef != nil:
						secret, found := secrets[ref.SecretKeyRef.Name][ref.SecretKeyRef.Key]
						if !found {
							return fmt.Errorf("container %s: Secret key %s/%s is not in the manifests", c.Name, ref.SecretKeyRef.Name, ref.SecretKeyRef.Key)
						}
						value = secret
					}
				}
				fmt.Fprintf(w, "%s=%s\n", env.Name, value)
			}
		}
	}
	return nil
}

func main() {
	args := os.Args[1:]
	mode := ""
	if len(args) > 0 && args[0] == "-env" {
		mode, args = "env", args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: k8s_manifests [-env] FILE...")
		os.Exit(2)
	}
	report := io.Writer(os.Stdout)
	if mode != "" {
		report = io.Discard
	}
	objects, err := load(args, report)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if mode == "env" {
		err = printEnv(os.Stdout, objects)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
