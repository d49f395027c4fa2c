// Package units formats quantities for people: sizes in binary units, as the dashboard,
// the findings and the command line show them.
package units

import "fmt"

var binary = []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}

// Bytes prints a size in the largest binary unit below it, with one decimal: 512 B,
// 1.5 KiB, 466.7 MiB, 3.7 GiB.
func Bytes(b int64) string {
	if b < 0 {
		return "-" + Bytes(-b)
	}
	v := float64(b)
	i := 0
	for v >= 1024 && i < len(binary)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", b)
	}
	return fmt.Sprintf("%.1f %s", v, binary[i])
}
