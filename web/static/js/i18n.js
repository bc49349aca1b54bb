// The pages' text in English (as written in the HTML and scripts) or
// Chinese, chosen from the browser's languages (navigator.languages), with
// ?lang=en|zh on the URL to override (kept for the session). Translation is
// by the English text: every text node and title/placeholder/aria-label
// attribute that is exactly a known string is replaced, now and whenever
// the page changes it (a MutationObserver), so the page scripts keep
// writing English. User-written text (chat lines, names, titles) is never
// looked at: it sits in elements marked below and is skipped.

const ZH = {
  'Live': '直播', 'Studio': '工作室', 'Live now': '正在直播', 'Live now · roomcast': '正在直播 · roomcast',
  'No one is live right now. Anchors go live from the': '现在没有人在直播。主播可以从', 'studio': '工作室',
  'Other rooms': '其他直播间', 'Room · roomcast': '直播间 · roomcast', 'Studio · roomcast': '工作室 · roomcast',
  'Offline': '未开播', 'LIVE': '直播中', 'Ended': '已结束', 'anchor': '主播', 'online now': '当前在线', 'live for': '已直播',
  'Sound on': '打开声音', 'Mute': '静音', 'Show danmaku': '显示弹幕', 'Danmaku': '弹幕', 'Quality': '清晰度', 'Auto': '自动',
  'Full screen': '全屏', 'Gifts': '礼物', 'Like': '点赞', 'Past sessions': '往期回放', 'Chat': '聊天',
  'Say something…': '说点什么…', 'Message': '消息', 'Send': '发送', 'Sign out': '退出登录',
  "Sign in with an anchor token — or, as the server's operator, with the admin key or the sign-in link the server printed — to set up rooms and go live.":
    '用主播令牌登录——服务器管理员也可以用管理密钥或服务器打印的登录链接——来设置直播间并开播。',
  'Anchor token or admin key': '主播令牌或管理密钥', 'Sign in': '登录', 'Where do I get an anchor token?': '从哪里获得主播令牌？',
  "The server's operator opens the one-time sign-in link the server printed on its first start (or prints a new one with":
    '服务器管理员打开服务器首次启动时打印的一次性登录链接（或用以下命令生成新链接：',
  "), creates a room for you in the studio and hands you its stream key. An operator can also sign an anchor token with the server's data directory:":
    '），在工作室为你创建直播间并把推流密钥交给你。管理员也可以用服务器的数据目录签发主播令牌：',
  "A host app can also sign one with the server's": '宿主应用也可以用服务器的', '(HS256, claims': '签发（HS256，声明', ') and open': '）并打开',
  'Rooms': '直播间', "Signed in as the server's operator. Create a room for an anchor and hand them its stream key, or open a room's dashboard.":
    '已作为服务器管理员登录。为主播创建直播间并交给他们推流密钥，或打开某个直播间的控制台。',
  'Anchor (user id)': '主播（用户 ID）', 'Title': '标题', 'Room id (optional)': '直播间 ID（可选）', 'Create room': '创建直播间',
  'Room': '直播间', 'Anchor': '主播', 'Status': '状态', 'Open': '打开', 'Create your room': '创建你的直播间',
  "Each anchor has one room. Its id is the room's address:": '每位主播有一个直播间，它的 ID 就是直播间的地址：',
  'Room id (optional: letters, digits, - and _)': '直播间 ID（可选：字母、数字、- 和 _）', 'Open viewer page ↗': '打开观众页面 ↗',
  'All rooms': '全部直播间', 'Stream setup (OBS)': '推流设置（OBS）', 'Server': '服务器', 'Copy': '复制', 'Copied': '已复制',
  'Copy failed': '复制失败', 'Stream key': '推流密钥', 'Show': '显示', 'Hide': '隐藏', 'Reset': '重置', 'Really reset?': '确定重置？',
  'In OBS: Settings → Stream → Service “Custom…”, paste the server and the key. With ffmpeg:':
    '在 OBS 中：设置 → 推流 → 服务选择“自定义…”，粘贴服务器和密钥。使用 ffmpeg：',
  'Preview': '预览', 'Start streaming from OBS; the preview starts by itself.': '从 OBS 开始推流，预览会自动开始。',
  "Record this room's sessions (VOD and danmaku replay)": '录制本直播间的场次（点播和弹幕回放）', 'Record sessions': '录制场次',
  'Sessions': '场次', 'Viewers': '观众', 'Messages per second': '每秒消息数', 'Messages/s': '消息/秒', 'Bitrate': '码率',
  'Moderation': '管理', 'user id': '用户 ID', 'User id': '用户 ID', 'Duration': '时长', '5 min': '5 分钟', '10 min': '10 分钟',
  '1 hour': '1 小时', '1 day': '1 天', 'Unmute': '解除禁言', 'Kick': '踢出', 'Remove': '删除', 'Audience': '观众列表',
  'Video': '视频', 'Audio': '音频', 'Players': '播放器', 'Uptime': '直播时长',
  'Connecting…': '连接中…', 'Loading…': '加载中…', 'Reconnecting…': '重新连接中…', 'No such room': '没有这个直播间',
  'Check the address, or pick a room on the live page.': '请检查地址，或在直播页选择一个直播间。',
  'The stream has ended': '直播已结束', 'Thanks for watching.': '感谢观看。',
  'The stream has not started. It will play here by itself when the anchor goes live.': '直播还没开始。主播开播后会在这里自动播放。',
  'Stream again from OBS to go live again.': '从 OBS 重新推流即可再次开播。',
  'The stream started.': '直播开始了。', 'The stream ended.': '直播结束了。', 'You are muted.': '你已被禁言。',
  'Someone was removed.': '有人被移出了直播间。', 'You were removed from this room.': '你已被移出本直播间。',
  'You were removed from this room': '你已被移出本直播间', 'You are muted in this room.': '你在本直播间已被禁言。',
  'You were away for a while: older messages were skipped.': '你离开了一会儿，较早的消息已跳过。',
  'Read only: sending is off on this server.': '只读：本服务器已关闭发言。', 'Something went wrong.': '出错了。',
  'Sign in to do that.': '请先登录。', 'The server cannot be reached.': '无法连接服务器。',
  'That is not a roomcast token.': '这不是 roomcast 令牌。', 'This token has expired. Sign a new one.': '令牌已过期，请重新签发。',
  'The server did not accept this token (wrong server, or signed with another secret).': '服务器不接受这个令牌（服务器不对，或用了别的密钥签发）。',
  'The id may have letters, digits, - and _ (up to 64), starting with a letter or digit.': 'ID 可包含字母、数字、- 和 _（最多 64 个），须以字母或数字开头。',
  'New stream key. Paste it into OBS; the old one no longer works.': '已生成新的推流密钥。请粘贴到 OBS，旧密钥已失效。',
  'RTMP ingest is off on this server: start it with --rtmp :1935.': '本服务器未开启 RTMP 推流：请用 --rtmp :1935 启动。',
  'Message removed.': '消息已删除。', 'No recording': '没有录像', 'Press play': '点击播放', 'Cannot play the recording': '无法播放录像',
  'This browser cannot play the recording': '此浏览器无法播放录像', 'Replay': '回放',
  'wrong admin key': '管理密钥错误',
  "Anchor's studio sign-in link (one-time, 15 minutes)": '主播的工作室登录链接（一次性，15 分钟内有效）', 'Make link': '生成链接',
  // red-packet rain, rankings, prizes (issue 13)
  'Red-packet rain!': '红包雨！', 'Tap!': '抢！', 'All packets are taken.': '红包已抢完。', 'You have your packets.': '你已抢到上限。',
  'The rain is over.': '红包雨结束了。', 'Busy — keep tapping!': '太火爆了——继续点！', 'Sign in to grab.': '登录后才能抢红包。',
  'Gift rankings': '礼物榜', 'Session': '本场', 'Today': '今日', 'All time': '总榜', 'My prizes': '我的奖品', 'No gifts yet.': '还没有礼物。',
  'Sign in to see your prizes.': '登录后查看奖品。', 'Red-packet rains': '红包雨',
  // live quiz, sessions and replay (issues 10 and 12)
  'Live quiz': '直播答题', 'Answer ms': '答题时间（毫秒）', 'Prize': '奖金', 'Create': '创建', 'Start': '开始',
  'Push next question': '推送下一题', 'Reveal': '公布答案', 'Questions, one a line:': '题目，每行一题：',
  'Create an activity first.': '请先创建活动。', 'Answer sealed — the result opens at the reveal.': '答案已封存——公布时揭晓结果。',
  'Correct!': '答对了！', 'No winners this time.': '这次没有获胜者。', 'The quiz is over': '答题已结束',
  'Could not open the result:': '无法打开结果：', 'Replay': '回放', 'Replay · roomcast': '回放 · roomcast', 'Back to live': '返回直播',
  'Danmaku (Bilibili XML)': '弹幕（Bilibili XML）', 'Download MP4': '下载 MP4', 'Chat replay': '聊天回放', 'Watch live': '观看直播',
  'LIVE · replay': '直播中 · 回放', 'Cannot load the session': '无法加载场次', 'No such session': '没有这个场次',
  'This session was not recorded (or its recording was deleted); its chat is below.': '这一场没有录像（或录像已删除），下面是它的聊天记录。',
  'The stream started': '直播开始', 'The stream stopped': '直播停止', 'Not recording.': '未在录制。',
  'Recording from the next key frame.': '将从下一个关键帧开始录制。',
};

// Strings with a variable part: [English pattern, Chinese replacement].
const ZH_PATTERNS = [
  [/^(\d+) live · (.+) watching$/, '$1 个直播 · $2 人观看'],
  [/^Signed in as (.+)$/, '已登录：$1'],
  [/^You are (.+) \(guest\)$/, '你是 $1（游客）'],
  [/^You are muted until (.+)\.$/, '你被禁言至 $1。'],
  [/^Muted (.+)\.$/, '已禁言 $1。'], [/^Unmuted (.+)\.$/, '已解除禁言 $1。'], [/^Kicked (.+)\.$/, '已踢出 $1。'],
  [/^Cannot load the rooms: (.*)$/, '无法加载直播间：$1'],
  [/^sent (.+)$/, '送出 $1'],
  [/^in (.+) kbps · out (.+) kbps$/, '输入 $1 kbps · 输出 $2 kbps'],
  [/^Question (\d+) of (\d+)$/, '第 $1 题，共 $2 题'],
  [/^Wrong — a revival card keeps you in \((\d+) left\)\.$/, '答错了——复活卡让你继续（还剩 $1 张）。'],
  [/^You won (.+)! $/, '你赢得了 $1！'],
  [/^Created (.+)\.$/, '已创建 $1。'],
  [/^Replay of (.+)$/, '$1 的回放'],
];

// Elements whose text users wrote (or that carry ids, keys, URLs).
const SKIP = '.text, .name, .card-title, .room-title, .anchor, #who, textarea, code, pre, .lv, [data-user-text]';

function pick() {
  const q = new URLSearchParams(location.search).get('lang');
  try {
    if (q === 'en' || q === 'zh') sessionStorage.setItem('roomcast.lang', q);
    const kept = sessionStorage.getItem('roomcast.lang');
    if (kept) return kept;
  } catch { /* storage off */ }
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || 'en'];
  for (const l of langs) {
    const s = String(l).toLowerCase();
    if (s.startsWith('zh')) return 'zh';
    if (s.startsWith('en')) return 'en';
  }
  return 'en';
}

/** The page's language: "en" or "zh". */
export const lang = pick();

/** t(english) is the text in the page's language. */
export function t(s) {
  if (lang !== 'zh' || typeof s !== 'string') return s;
  const key = s.trim();
  if (Object.hasOwn(ZH, key)) return s.replace(key, ZH[key]);
  for (const [re, rep] of ZH_PATTERNS) if (re.test(key)) return s.replace(key, key.replace(re, rep));
  return s;
}

const ATTRS = ['title', 'placeholder', 'aria-label'];

function skipped(node) {
  const e = node.nodeType === 1 ? node : node.parentElement;
  return !e || !!e.closest(SKIP);
}

function translateNode(node) {
  if (node.nodeType === 3) {
    if (!skipped(node)) {
      const v = t(node.nodeValue);
      if (v !== node.nodeValue) node.nodeValue = v;
    }
    return;
  }
  if (node.nodeType !== 1 || skipped(node)) return;
  for (const a of ATTRS) {
    const v = node.getAttribute(a);
    if (v) {
      const tv = t(v);
      if (tv !== v) node.setAttribute(a, tv);
    }
  }
  for (const c of node.childNodes) translateNode(c);
}

if (lang === 'zh') {
  document.documentElement.lang = 'zh-CN';
  document.title = t(document.title);
  translateNode(document.body);
  new MutationObserver((records) => {
    for (const r of records) {
      if (r.type === 'characterData') translateNode(r.target);
      else if (r.type === 'attributes') translateNode(r.target);
      else for (const n of r.addedNodes) translateNode(n);
    }
  }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ATTRS });
}
