package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"slices"
	"strings"
)

// The plot's geometry, in SVG user units.
const (
	width      = 760
	left       = 78
	right      = 24
	top        = 44
	plotHeight = 300
	legendRow  = 18
)

// Okabe-Ito colours (told apart with most colour blindness), each with a
// dash pattern and a marker so that lines differ without colour too.
var (
	colours = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8c8c8c", "#7f3fbf"}
	dashes  = []string{"", "7 4", "2 3", "9 3 2 3"}
)

// The page's colours: an opaque card that reads on a light and a dark page
// alike, and a dark card where the viewer prefers dark.
const style = `
.bg{fill:#ffffff}.fg{fill:#1f2328}.axis{stroke:#57606a}.grid{stroke:#d8dee4}
@media (prefers-color-scheme: dark){.bg{fill:#0d1117}.fg{fill:#e6edf3}.axis{stroke:#8b949e}.grid{stroke:#30363d}}
text{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;font-size:12px}
.title{font-size:15px;font-weight:600}`

// scale maps data to pixels, linear or logarithmic.
type scale struct {
	log      bool
	lo, hi   float64
	from, to float64
}

func (s scale) at(v float64) float64 {
	a, b, x := s.lo, s.hi, v
	if s.log {
		a, b, x = math.Log10(a), math.Log10(b), math.Log10(v)
	}
	if b == a {
		return (s.from + s.to) / 2
	}
	return s.from + (x-a)/(b-a)*(s.to-s.from)
}

// niceUp and niceDown round to 1, 2 or 5 times a power of ten.
func niceUp(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

func niceDown(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{5, 2, 1} {
		if m*p <= v*(1+1e-9) {
			return m * p
		}
	}
	return p
}

// logTicks are the 1-2-5 values within [lo, hi].
func logTicks(lo, hi float64) []float64 {
	var t []float64
	for p := math.Pow(10, math.Floor(math.Log10(lo))); p <= hi*1.0001; p *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := m * p; v >= lo*0.9999 && v <= hi*1.0001 {
				t = append(t, v)
			}
		}
	}
	return t
}

func linTicks(hi float64) []float64 {
	step := niceUp(hi / 5)
	var t []float64
	for v := 0.0; v <= hi*1.0001; v += step {
		t = append(t, v)
	}
	return t
}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func svgPlot(p *plot) string {
	m := metaOf(p.name)
	var xs, ys []float64
	for _, l := range p.lines {
		for _, pt := range l.pts {
			if !slices.Contains(xs, pt.x) {
				xs = append(xs, pt.x)
			}
			ys = append(ys, pt.y)
		}
	}
	slices.Sort(xs)
	xmin, xmax := xs[0], xs[len(xs)-1]
	ymin, ymax := slices.Min(ys), slices.Max(ys)
	bottom := float64(top + plotHeight)
	xsc := scale{log: xmin > 0 && xmax/xmin >= 8, lo: xmin, hi: xmax, from: left + 10, to: width - right - 10}
	ysc := scale{from: bottom, to: top}
	var yticks []float64
	if ymin > 0 && ymax/ymin > 20 {
		ysc.log, ysc.lo, ysc.hi = true, niceDown(ymin), niceUp(ymax)
		yticks = logTicks(ysc.lo, ysc.hi)
	} else {
		ysc.lo, ysc.hi = 0, niceUp(math.Max(ymax, 1e-9))
		yticks = linTicks(ysc.hi)
	}
	height := top + plotHeight + 56 + legendRow*len(p.lines) + 10

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`+"\n",
		width, height, width, height, esc(m.title))
	fmt.Fprintf(&b, "<title>%s</title>\n<style>%s\n</style>\n", esc(m.title), style)
	fmt.Fprintf(&b, `<rect class="bg" x="0" y="0" width="%d" height="%d" rx="6"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text class="fg title" x="%d" y="24">%s</text>`+"\n", left, esc(m.title))
	// Grid and tick labels.
	for _, t := range yticks {
		y := ysc.at(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke-width="1"/>`+"\n", left, width-right, y, y)
		fmt.Fprintf(&b, `<text class="fg" x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, esc(tick(t)))
	}
	for _, x := range xs {
		px := xsc.at(x)
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" x2="%.1f" y1="%d" y2="%.1f" stroke-width="1"/>`+"\n", px, px, top, bottom)
		fmt.Fprintf(&b, `<text class="fg" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px, bottom+16, esc(tick(x)))
	}
	// Axes and their labels.
	fmt.Fprintf(&b, `<line class="axis" x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke-width="1.2"/>`+"\n", left, width-right, bottom, bottom)
	fmt.Fprintf(&b, `<line class="axis" x1="%d" x2="%d" y1="%d" y2="%.1f" stroke-width="1.2"/>`+"\n", left, left, top, bottom)
	scaleNote := func(log bool) string {
		if log {
			return " (log scale)"
		}
		return ""
	}
	fmt.Fprintf(&b, `<text class="fg" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n",
		float64(left+width-right)/2, bottom+36, esc(m.xlabel+scaleNote(xsc.log)))
	fmt.Fprintf(&b, `<text class="fg" transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n",
		float64(top)+plotHeight/2, esc(m.ylabel+scaleNote(ysc.log)))
	// Lines, markers and the legend.
	for i, l := range p.lines {
		c, d := colours[i%len(colours)], dashes[(i+i/len(colours))%len(dashes)]
		pts := slices.Clone(l.pts)
		slices.SortFunc(pts, func(a, b point) int { return cmpF(a.x, b.x) })
		var path []string
		for _, pt := range pts {
			path = append(path, fmt.Sprintf("%.1f,%.1f", xsc.at(pt.x), ysc.at(pt.y)))
		}
		dash := ""
		if d != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, d)
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2"%s points="%s"><title>%s</title></polyline>`+"\n",
			c, dash, strings.Join(path, " "), esc(l.name))
		for _, pt := range pts {
			b.WriteString(marker(i, xsc.at(pt.x), ysc.at(pt.y), c) + "\n")
		}
		ly := float64(top+plotHeight+56+legendRow*i) + 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", left, left+34, ly, ly, c, dash)
		b.WriteString(marker(i, left+17, ly, c) + "\n")
		fmt.Fprintf(&b, `<text class="fg" x="%d" y="%.1f">%s</text>`+"\n", left+42, ly+4, esc(l.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func cmpF(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// marker draws line i's point symbol: circle, square, triangle or diamond.
func marker(i int, x, y float64, c string) string {
	switch i % 4 {
	case 1:
		return fmt.Sprintf(`<rect x="%.1f" y="%.1f" width="7" height="7" fill="%s"/>`, x-3.5, y-3.5, c)
	case 2:
		return fmt.Sprintf(`<path d="M%.1f %.1fL%.1f %.1fL%.1f %.1fZ" fill="%s"/>`, x, y-4.5, x+4.5, y+3.5, x-4.5, y+3.5, c)
	case 3:
		return fmt.Sprintf(`<path d="M%.1f %.1fL%.1f %.1fL%.1f %.1fL%.1f %.1fZ" fill="%s"/>`, x, y-5, x+5, y, x, y+5, x-5, y, c)
	}
	return fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="3.6" fill="%s"/>`, x, y, c)
}

// tick prints an axis value briefly: 0.5, 2, 150, 2k, 10k.
func tick(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%gk", math.Round(v/100)/10)
	case v >= 1:
		return fmt.Sprintf("%g", math.Round(v*100)/100)
	}
	return fmt.Sprintf("%g", v)
}
