package builtins

import (
	"testing"

	"github.com/studiorun/studiorun/runtime"
)

// BenchmarkEvalStudio evaluates the studio's fleet and its roles for 1000
// dev hosts on a /16: studio.star then servers.star, per op.
func BenchmarkEvalStudio(b *testing.B) {
	vars := []string{"dev_host_count=1000", "subnet=172.16.0.0/16"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		resources := 0
		for _, script := range []string{"../scripts/studio.star", "../scripts/servers.star"} {
			plan, err := runtime.Eval(runtime.Options{Script: script, Vars: vars, Secrets: runtime.TestSecrets{}, Modules: Modules()})
			if err != nil {
				b.Fatal(err)
			}
			resources += len(plan.Resources)
		}
		b.ReportMetric(float64(resources), "resources/op")
	}
}
