package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chinese makes the tab's browser prefer Chinese (navigator.languages) for
// every document it loads.
func (tb *tab) chinese() {
	tb.t.Helper()
	tb.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
			Source: `Object.defineProperty(navigator, 'languages', {get: () => ['zh-CN', 'zh', 'en']});
Object.defineProperty(navigator, 'language', {get: () => 'zh-CN'});`})
		return err
	}))
}

// The pages speak Chinese to a browser that prefers it — static text and
// what the scripts write later — and never touch what users wrote; English
// otherwise; ?lang= overrides.
func TestPagesInChinese(t *testing.T) {
	s := startServer(t, nil)
	_, anchorTok := s.createRoom("zh1", "Offline", "mei") // a title that is also a UI string
	viewer := s.token("li", "Live", "viewer", 1)

	en := newTab(t)
	en.navigate(s.url + "/")
	en.wait(`document.querySelector('h1').textContent === 'Live now' && document.documentElement.lang === 'en'`, 5*time.Second)

	zh := newTab(t)
	zh.chinese()
	zh.navigate(s.url + "/")
	zh.wait(`document.querySelector('h1').textContent === '正在直播' && document.documentElement.lang === 'zh-CN' && document.title === '正在直播 · roomcast'`, 5*time.Second)
	zh.wait(`document.querySelector('.card[data-room="zh1"] .card-title')?.textContent === 'Offline'`, 5*time.Second) // a room's title stays
	zh.wait(`document.querySelector('.card[data-room="zh1"] .badge')?.textContent === '未开播'`, 5*time.Second)          // written by the script

	zh.navigate(s.url + "/room/zh1")
	zh.wait(`document.querySelector('#status').textContent === '未开播' && document.querySelector('#send-btn').textContent === '发送' && document.querySelector('#send-text').placeholder === '说点什么…'`, 10*time.Second)
	s.chat("zh1", viewer, "Send")                                                                                      // a user's message that is also a UI string
	zh.wait(`[...document.querySelectorAll('#chat .line .text')].some(n => n.textContent === 'Send')`, 10*time.Second) // a user's message stays
	if got := eval[string](zh, `document.querySelector('#title').textContent`); got != "Offline" {
		t.Errorf("the room's title was translated to %q", got)
	}

	zh.navigate(s.url + "/studio?lang=en#token=" + anchorTok)
	zh.wait(`!document.querySelector('#dash').hidden && document.querySelector('#room-status').textContent === 'Offline'`, 10*time.Second)
	zh.navigate(s.url + "/studio?lang=zh")
	zh.wait(`!document.querySelector('#dash').hidden && document.querySelector('#room-status').textContent === '未开播' && document.querySelector('#key-reset').textContent === '重置'`, 10*time.Second)
}
