package stats

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/device"
)

// chromium is Debian's browser; `make deps` installs it.
const chromium = "/usr/bin/chromium"

// browser starts headless Chromium with a fresh profile and returns a
// context driving one tab.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("%s is missing (run `make deps`): %v", chromium, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	return bctx
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.ArtifactDir(), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatal(err)
	}
}

// rowsText returns the visible text of the leaderboard's rows.
func rowsText(t *testing.T, ctx context.Context) []string {
	t.Helper()
	return run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('#board tbody tr')].map(r => r.innerText.replace(/\s+/g, ' ').trim())`))
}

// TestBrowser drives headless Chromium through the pages as a person
// would: the leaderboard, a sort, an operator, a package build, the health
// page, and the leaderboard on a phone.
func TestBrowser(t *testing.T) {
	w := webWorld(t)
	srv := httptest.NewServer(Handler(replay(t, w.config(), w.entries)))
	defer srv.Close()
	ctx := browser(t)

	do(t, ctx, chromedp.Navigate(srv.URL+"/stats/"), chromedp.WaitVisible(chromedp.CSS("#board")))
	rows := rowsText(t, ctx)
	want := []string{
		"1 alice red 300.0",
		"2 ops/with slash?&# red 300.0",
		`3 <script>alert("op")</script> "><img src=x onerror=alert(1)> 200.0`,
		"4 dave 100.0",
		"5 mallory 100.0",
	}
	if len(rows) != len(want) {
		t.Fatalf("leaderboard rows %q", rows)
	}
	for i := range want {
		if !strings.HasPrefix(rows[i], want[i]) {
			t.Errorf("row %d reads %q, want it to start %q", i+1, rows[i], want[i])
		}
	}
	screenshot(t, ctx, "leaderboard")

	// Sort by outliers: mallory, the only outlier, comes first and keeps
	// rank 5.
	do(t, ctx, chromedp.Click(chromedp.CSS(`th a[href="?sort=outliers"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`th[aria-sort] a[href="?sort=outliers"]`)))
	if loc := run(t, ctx, chromedp.Location()); !strings.HasSuffix(loc, "/stats/?sort=outliers") {
		t.Errorf("after the click the page is %s", loc)
	}
	rows = rowsText(t, ctx)
	if len(rows) == 0 || !strings.HasPrefix(rows[0], "5 mallory 100.0") || !strings.HasSuffix(rows[0], " 1 0") {
		t.Errorf("sorted by outliers, the rows read %q", rows)
	}
	screenshot(t, ctx, "leaderboard-by-outliers")

	// Open mallory's page from the leaderboard.
	do(t, ctx, chromedp.Click(chromedp.CSS(`#board tbody tr:first-child td.name a`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`#rank`)))
	h1, rank := run(t, ctx, chromedp.Text(chromedp.CSS(`h1`))), run(t, ctx, chromedp.Text(chromedp.CSS(`#rank`)))
	if h1 != "Operator mallory" || rank != "5" {
		t.Errorf("operator page: %q, rank %q", h1, rank)
	}
	screenshot(t, ctx, "operator")

	// Follow the operator's recent build to the package build page.
	do(t, ctx, chromedp.Click(chromedp.Search(`//a[text()="hello-2.12-1.fc41"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`#verdict`)))
	verdict, outliers := run(t, ctx, chromedp.Text(chromedp.CSS(`#verdict`))), run(t, ctx, chromedp.Text(chromedp.CSS(`#outliers`)))
	if verdict != "reproduced" || !strings.HasPrefix(outliers, "mallory: entry ") {
		t.Errorf("build page: verdict %q, outliers %q", verdict, outliers)
	}
	screenshot(t, ctx, "build")

	// The build's package page lists it with its verdict.
	do(t, ctx, chromedp.Click(chromedp.Search(`//dd/a[text()="hello-2.12-1.fc41"]`), chromedp.NodeVisible),
		chromedp.WaitVisible(chromedp.CSS(`#builds`)))
	if row := run(t, ctx, chromedp.Text(chromedp.CSS(`#builds tbody tr`))); !strings.Contains(row, "x86_64") || !strings.Contains(row, "reproduced") {
		t.Errorf("package page row %q", row)
	}

	do(t, ctx, chromedp.Navigate(srv.URL+"/stats/health"), chromedp.WaitVisible(chromedp.CSS(`#builds-chart`)))
	breaker := run(t, ctx, chromedp.Text(chromedp.CSS(`#breaker`)))
	bars := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#builds-chart rect.bar').length`))
	if breaker != "Closed" || bars != 2 {
		t.Errorf("health page: breaker %q, %d bars", breaker, bars)
	}
	screenshot(t, ctx, "health")

	// On a phone the leaderboard fits the screen's width.
	do(t, ctx, chromedp.Emulate(device.IPhone12), chromedp.Navigate(srv.URL+"/stats/"), chromedp.WaitVisible(chromedp.CSS("#board")))
	if run(t, ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`)) {
		t.Errorf("the page is wider than a phone's screen")
	}
	// Every sortable column is on screen without scrolling the table.
	if run(t, ctx, chromedp.Evaluate[bool](`document.querySelector('#board').getBoundingClientRect().right > window.innerWidth`)) {
		t.Errorf("the leaderboard table is wider than a phone's screen")
	}
	screenshot(t, ctx, "leaderboard-phone")
}
