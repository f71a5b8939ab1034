// Package crds only imports the API types controller-gen reads (../build.sh prometheus-crds).
package crds

import _ "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
