package stats

import (
	"strconv"
	"strings"
)

// Inline SVG charts of the health page: drawn here, as numbers, so the
// template only places them (no JavaScript, no images to fetch).

const (
	chartW    = 600
	chartH    = 160
	chartPad  = 24
	chartDays = 30 // the latest days shown
)

type chartBar struct {
	X, Y, W, H string
	Title      string
}

type chartDot struct {
	X, Y  string
	Title string
}

// chart is an SVG chart: bars, or a line with dots.
type chart struct {
	Label  string
	W, H   int
	Bars   []chartBar
	Line   string // polyline points
	Dots   []chartDot
	Max    string // the top of the scale
	First  string // the first day
	Last   string // the last day
	Base   string // y of the axis
	Right  string // x of the axis end
	Top    string // y of the top of the scale
	Middle string // y of the middle line
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) }

// dailyChart draws builds decided per day ("builds") or the share of them
// reproduced ("rate") over the latest chartDays days.
func dailyChart(days []DayStats, kind string) chart {
	if len(days) > chartDays {
		days = days[len(days)-chartDays:]
	}
	c := chart{W: chartW, H: chartH, Base: num(chartH - chartPad), Right: num(chartW - 4), Top: num(chartPad / 2), Middle: num((chartH - chartPad + chartPad/2) / 2.0)}
	if len(days) == 0 {
		c.Label = "no builds decided yet"
		return c
	}
	c.First, c.Last = days[0].Day, days[len(days)-1].Day
	plotH := float64(chartH - chartPad - chartPad/2)
	slot := float64(chartW-chartPad) / float64(len(days))
	x0 := float64(chartPad)
	base := float64(chartH - chartPad)
	switch kind {
	case "builds":
		top := 1
		for _, d := range days {
			top = max(top, d.Decided)
		}
		c.Max = strconv.Itoa(top)
		c.Label = "builds decided per day, up to " + c.Max
		for i, d := range days {
			h := plotH * float64(d.Decided) / float64(top)
			c.Bars = append(c.Bars, chartBar{
				X: num(x0 + float64(i)*slot + slot*0.1), Y: num(base - h), W: num(slot * 0.8), H: num(h),
				Title: d.Day + ": " + strconv.Itoa(d.Decided) + " decided, " + strconv.Itoa(d.Reproduced) + " reproduced",
			})
		}
	default:
		c.Max = "100%"
		c.Label = "share of decided builds reproduced per day"
		var pts []string
		for i, d := range days {
			if d.Decided == 0 {
				continue
			}
			rate := float64(d.Reproduced) / float64(d.Decided)
			x, y := x0+float64(i)*slot+slot/2, base-plotH*rate
			pts = append(pts, num(x)+","+num(y))
			c.Dots = append(c.Dots, chartDot{X: num(x), Y: num(y), Title: d.Day + ": " + strconv.FormatFloat(100*rate, 'f', 1, 64) + "% reproduced"})
		}
		c.Line = strings.Join(pts, " ")
	}
	return c
}
