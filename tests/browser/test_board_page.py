"""The demo board page in real browsers, against the real stack (see conftest.py).

Each test drives pages as people would (drag, type, click) and checks what the *other* page shows,
and where it matters, that the pages agree with Postgres (``GET /v1/boards/{id}``).
"""

from __future__ import annotations

import re
import time

from tests.browser.conftest import NETWORK_ERRORS, PHONE, layout_of, needs_chromium

pytestmark = needs_chromium

COLUMNS = {
    "To do": ["Sketch the onboarding flow", "Write release notes", "Triage incoming bugs"],
    "In progress": ["Drag-and-drop polish", "Presence avatars"],
    "Done": ["Socket.IO handshake"],
}


def test_a_drag_shows_up_for_the_other_user_within_a_second(open_page, stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    org = stack.organization((alice, "owner"), (bob, "member"))
    board = stack.board(org, alice, COLUMNS)
    board_id = board["board"]["id"]
    todo, doing, _ = (c["id"] for c in board["columns"])
    a = open_page("alice").open(stack.page_url, alice, board_id)
    b = open_page("bob").open(stack.page_url, bob, board_id)
    for page in (a, b):
        page.wait_for_layout(layout_of(board))

    # Both see each other on the board.
    a.page.locator(f'[data-testid="presence-avatar"][data-user-id="{bob.id}"]').wait_for(timeout=5_000)
    b.page.locator(f'[data-testid="presence-avatar"][data-user-id="{alice.id}"]').wait_for(timeout=5_000)
    a.shot("board-loaded")

    # Alice drags the first "To do" card between the two "In progress" cards.
    card = board["cards"][0]["id"]
    second_in_progress = next(c["id"] for c in board["cards"] if c["column_id"] == doing and c["position"] == 1)
    a.card(card).drag_to(a.card(second_in_progress), target_position={"x": 40, "y": 4})
    dropped = time.monotonic()
    b.wait_for_card_at(card, doing, 1, timeout=1_000)
    assert time.monotonic() - dropped < 1.0
    a.wait_for_card_at(card, doing, 1)
    after = stack.snapshot(board_id, alice)
    moved = next(c for c in after["cards"] if c["id"] == card)
    assert (moved["column_id"], moved["position"]) == (doing, 1)
    for page in (a, b):
        assert page.layout() == layout_of(after)
    a.shot("after-drag")
    b.shot("after-drag")

    # A drop into an empty spot at the end of a column, then a keyboard move back up.
    a.drag_to_end(card, todo)
    b.wait_for_card_at(card, todo, 2)
    a.card(card).focus()
    a.page.keyboard.press("Shift+ArrowUp")
    b.wait_for_card_at(card, todo, 1)
    assert a.page.evaluate("document.activeElement.dataset.cardId") == card  # focus follows the card

    # The server resolves a move past the end of a column to its end, and tells the mover.
    a.page.evaluate("([id, column]) => window.liveboard.move(id, column, 50)", [card, doing])
    a.page.get_by_test_id("toast-conflict").wait_for(timeout=5_000)
    assert "position 3" in a.page.get_by_test_id("toast-conflict").inner_text()
    b.wait_for_card_at(card, doing, 2)
    a.wait_for_layout(layout_of(stack.snapshot(board_id, alice)))
    b.wait_for_layout(layout_of(stack.snapshot(board_id, alice)))
    a.shot("conflict-toast")
    a.assert_no_console_errors()
    b.assert_no_console_errors()


def test_create_edit_comment_assign_and_delete_reach_the_other_page(open_page, stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    org = stack.organization((alice, "owner"), (bob, "member"))
    board = stack.board(org, alice, COLUMNS)
    board_id = board["board"]["id"]
    todo = board["columns"][0]["id"]
    a = open_page("alice").open(stack.page_url, alice, board_id)
    b = open_page("bob-phone", viewport=PHONE).open(stack.page_url, bob, board_id)
    b.page.locator(f'[data-testid="presence-avatar"][data-user-id="{alice.id}"]').wait_for(timeout=5_000)

    # Create: the inline composer at the bottom of "To do".
    a.column(todo).get_by_test_id("add-card").click()
    a.column(todo).get_by_test_id("new-card-title").fill("Plan the launch party")
    a.column(todo).get_by_test_id("new-card-title").press("Enter")
    b.page.locator('[data-testid="card-title"]', has_text="Plan the launch party").wait_for(timeout=5_000)
    created = next(c for c in stack.snapshot(board_id, alice)["cards"] if c["title"] == "Plan the launch party")
    assert (created["column_id"], created["position"]) == (todo, 3)
    b.wait_for_card_at(created["id"], todo, 3)
    a.shot("created")

    # Edit: Bob sees that Alice is typing on that card, then her saved title and description.
    a.card(created["id"]).click()
    dialog = a.page.get_by_test_id("card-dialog")
    dialog.get_by_test_id("card-title-input").fill("Plan the launch party (Friday)")
    b.card(created["id"]).get_by_test_id("card-typing").wait_for(timeout=5_000)
    assert "alice" in b.card(created["id"]).get_by_test_id("card-typing").inner_text()
    b.shot("sees-typing")
    dialog.get_by_test_id("card-description-input").fill("Cake, music, and a demo of the live board.")
    dialog.get_by_test_id("card-labels-input").fill("team, fun")
    a.shot("editing")
    dialog.get_by_test_id("card-save").click()
    dialog.wait_for(state="hidden")
    card = b.card(created["id"])
    card.get_by_test_id("card-title").filter(has_text="Plan the launch party (Friday)").wait_for(timeout=5_000)
    assert card.get_by_test_id("card-description").inner_text() == "Cake, music, and a demo of the live board."
    assert card.get_by_test_id("card-label").all_inner_texts() == ["team", "fun"]
    card.get_by_test_id("card-typing").wait_for(state="detached", timeout=7_000)

    # Assign Bob and comment, from Alice's dialog; Bob sees both.
    a.card(created["id"]).click()
    dialog.locator(f'[data-testid="assignee-checkbox"][data-user-id="{bob.id}"]').check()
    card.locator(f'[data-testid="card-assignee"][data-user-id="{bob.id}"]').wait_for(timeout=5_000)
    dialog.get_by_test_id("comment-input").fill("Bob, can you book the room?")
    dialog.get_by_test_id("comment-submit").click()
    card.get_by_test_id("card-comments").wait_for(timeout=5_000)
    a.shot("assigned-and-commented")
    a.page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    card.click()
    b_dialog = b.page.get_by_test_id("card-dialog")
    assert b_dialog.get_by_test_id("comment").inner_text().endswith("Bob, can you book the room?")
    assert b_dialog.locator(f'[data-testid="assignee-checkbox"][data-user-id="{bob.id}"]').is_checked()
    b.shot("card-dialog")
    b_dialog.get_by_test_id("dialog-close").click()
    b.shot("board")

    # Delete, with the inline confirmation.
    a.card(created["id"]).click()
    dialog.get_by_test_id("card-delete").click()
    dialog.get_by_test_id("card-delete-confirm").click()
    b.card(created["id"]).wait_for(state="detached", timeout=5_000)
    a.card(created["id"]).wait_for(state="detached", timeout=5_000)
    final = stack.snapshot(board_id, alice)
    assert created["id"] not in {c["id"] for c in final["cards"]}
    a.wait_for_layout(layout_of(final))
    b.wait_for_layout(layout_of(final))
    b.shot("deleted")
    a.assert_no_console_errors()
    b.assert_no_console_errors()


def test_pages_survive_a_realtime_crash_and_catch_up_with_postgres(open_page, stack):
    alice, bob = stack.user("alice"), stack.user("bob")
    org = stack.organization((alice, "owner"), (bob, "member"))
    board = stack.board(org, alice, COLUMNS)
    board_id = board["board"]["id"]
    todo, doing, done = (c["id"] for c in board["columns"])
    a = open_page("alice").open(stack.page_url, alice, board_id)
    b = open_page("bob").open(stack.page_url, bob, board_id)
    for page in (a, b):
        page.wait_for_layout(layout_of(board))
    a.shot("before-crash")

    stack.processes["realtime"].kill()  # SIGKILL: no goodbye to the browsers
    for page in (a, b):
        page.page.get_by_test_id("offline-banner").wait_for(state="visible", timeout=5_000)
    a.shot("offline")

    # While realtime is down, the board changes through boards REST (as another client would).
    boards = stack.boards_url
    first = board["cards"][0]
    status, _ = stack.call(
        "POST", f"{boards}/v1/cards/{first['id']}/move", alice.token, {"to_column_id": done, "position": 0}
    )
    assert status == 200
    status, _ = stack.call(
        "POST",
        f"{boards}/v1/boards/{board_id}/cards",
        alice.token,
        {"column_id": doing, "title": "Written while realtime was down", "position": 0},
    )
    assert status == 201
    second = board["cards"][1]
    status, _ = stack.call("PATCH", f"{boards}/v1/cards/{second['id']}", alice.token, {"title": "Renamed offline"})
    assert status == 200
    status, _ = stack.call("DELETE", f"{boards}/v1/cards/{board['cards'][2]['id']}", alice.token)
    assert status == 200
    time.sleep(0.5)
    assert a.page.get_by_test_id("offline-banner").is_visible()  # still offline, nothing applied yet
    assert a.layout() == layout_of(board)

    stack.processes["realtime"].start(timeout=30)
    truth = layout_of(stack.snapshot(board_id, alice))
    for page in (a, b):
        page.page.get_by_test_id("offline-banner").wait_for(state="hidden", timeout=15_000)
        page.wait_for_layout(truth)
        page.page.get_by_test_id("toast-online").wait_for(timeout=5_000)
    a.shot("recovered")
    b.shot("recovered")

    # And live again afterwards: Bob drags, Alice sees it.
    current = stack.snapshot(board_id, alice)
    moved = next(c["id"] for c in current["cards"] if c["column_id"] == doing)
    b.drag_to_end(moved, todo)
    a.wait_for_card_at(moved, todo, sum(1 for c in current["cards"] if c["column_id"] == todo))
    final = layout_of(stack.snapshot(board_id, alice))
    a.wait_for_layout(final)
    b.wait_for_layout(final)
    a.shot("live-again")
    # Chromium logs the refused reconnection attempts itself; nothing else may appear.
    a.assert_no_console_errors(allow=NETWORK_ERRORS)
    b.assert_no_console_errors(allow=NETWORK_ERRORS)


def test_a_viewer_sees_the_board_read_only_and_the_server_refuses_writes(open_page, stack):
    owner, viewer = stack.user("olivia"), stack.user("victor")
    org = stack.organization((owner, "owner"), (viewer, "viewer"))
    board = stack.board(org, owner, COLUMNS)
    board_id = board["board"]["id"]
    todo, doing, _ = (c["id"] for c in board["columns"])
    v = open_page("viewer").open(stack.page_url, viewer, board_id)
    v.wait_for_layout(layout_of(board))
    v.page.get_by_test_id("readonly-badge").wait_for(state="visible")
    assert v.page.get_by_test_id("add-card").first.is_hidden()
    card = board["cards"][0]["id"]
    assert v.card(card).get_attribute("draggable") == "false"
    v.shot("read-only")

    # Dragging does nothing, and neither does the keyboard move.
    v.drag_to_end(card, doing)
    v.card(card).focus()
    v.page.keyboard.press("Shift+ArrowRight")
    time.sleep(0.5)
    assert v.layout() == layout_of(board)
    assert stack.snapshot(board_id, owner)["seq"] == board["seq"]

    # The card dialog is read-only as well.
    v.card(card).click()
    dialog = v.page.get_by_test_id("card-dialog")
    assert dialog.get_by_test_id("card-title-input").get_attribute("readonly") is not None
    assert dialog.get_by_test_id("card-save").is_hidden()
    assert dialog.get_by_test_id("card-delete").is_hidden()
    v.shot("read-only-dialog")
    dialog.get_by_test_id("dialog-close").click()

    # Going around the page: the server refuses the write.
    answer = v.page.evaluate(
        """(move) => new Promise((resolve) => window.liveboard.socket.emit('task_moved', move, resolve))""",
        {"board_id": board_id, "task_id": card, "from_column_id": todo, "to_column_id": doing, "position": 0},
    )
    assert answer["ok"] is False and answer["error"]["code"] == "forbidden", answer
    assert stack.snapshot(board_id, owner)["seq"] == board["seq"]
    v.assert_no_console_errors()


def test_a_populated_board_reads_well_on_a_laptop_and_a_phone(open_page, stack):
    alice, bob, carol = stack.user("alice"), stack.user("bob"), stack.user("carol")
    org = stack.organization((alice, "owner"), (bob, "member"), (carol, "viewer"))
    board = stack.board(
        org,
        alice,
        {
            "To do": ["Sketch the onboarding flow", "Write release notes", "Triage incoming bugs"],
            "In progress": ["Drag-and-drop polish", "Presence avatars"],
            "Review": ["Offline catch-up"],
            "Done": ["Socket.IO handshake"],
        },
    )
    board_id = board["board"]["id"]
    cards = {c["title"]: c["id"] for c in board["cards"]}
    boards = stack.boards_url
    details = {
        "Sketch the onboarding flow": {
            "description": "Three screens: welcome, invite the team, first board.",
            "labels": ["design"],
            "due_date": "2031-03-14",
        },
        "Triage incoming bugs": {"labels": ["bugs", "urgent"], "due_date": "2020-01-06"},
        "Drag-and-drop polish": {"description": "Keyboard moves, drop marker, focus follows the card."},
        "Offline catch-up": {"labels": ["sync"]},
    }
    for title, patch in details.items():
        status, body = stack.call("PATCH", f"{boards}/v1/cards/{cards[title]}", alice.token, patch)
        assert status == 200, body
    for title, people in {"Drag-and-drop polish": [alice, bob], "Offline catch-up": [bob]}.items():
        status, body = stack.call(
            "PUT", f"{boards}/v1/cards/{cards[title]}/assignees", alice.token, {"assignee_ids": [p.id for p in people]}
        )
        assert status == 200, body
    status, body = stack.call(
        "PATCH", f"{boards}/v1/columns/{board['columns'][1]['id']}", alice.token, {"wip_limit": 1}
    )
    assert status == 200, body

    laptop = open_page("laptop").open(stack.page_url, alice, board_id)
    phone = open_page("phone", viewport=PHONE).open(stack.page_url, bob, board_id)
    open_page("viewer").open(stack.page_url, carol, board_id)
    for page in (laptop, phone):
        page.wait_for_layout(layout_of(stack.snapshot(board_id, alice)))
        page.page.locator('[data-testid="presence-avatar"]').nth(2).wait_for(timeout=5_000)
    status, body = stack.call(
        "POST", f"{boards}/v1/cards/{cards['Offline catch-up']}/comments", alice.token, {"body": "Looks good to me."}
    )
    assert status == 201, body
    laptop.card(cards["Offline catch-up"]).get_by_test_id("card-comments").wait_for(timeout=5_000)
    phone.page.mouse.move(0, 0)
    laptop.page.mouse.move(0, 0)
    laptop.shot("1280x800")
    phone.shot("390x844")
    laptop.page.emulate_media(color_scheme="dark")
    laptop.shot("1280x800-dark")
    laptop.page.emulate_media(color_scheme="light")

    # The page never scrolls sideways on a phone: the board does, one column at a time.
    overflow = phone.page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    board_el = phone.page.get_by_test_id("board")
    assert board_el.evaluate("(el) => el.scrollWidth > el.clientWidth")
    first_column = phone.page.get_by_test_id("column").first.bounding_box()
    assert first_column["width"] <= PHONE["width"] - 24

    # Keyboard: Tab reaches the cards, arrows walk them, and focus is visible.
    laptop.page.keyboard.press("Tab")  # from the top: "Skip to the board" comes first
    assert laptop.page.evaluate("document.activeElement.className") == "skip-link"
    laptop.page.keyboard.press("Enter")
    assert laptop.page.evaluate("document.activeElement.dataset.cardId") == cards["Sketch the onboarding flow"]
    laptop.page.get_by_test_id("board").focus()
    laptop.page.keyboard.press("Tab")
    focused = laptop.page.evaluate("document.activeElement.dataset.testid")
    assert focused == "card", focused
    laptop.page.keyboard.press("ArrowRight")
    assert laptop.page.evaluate("document.activeElement.dataset.cardId") == cards["Drag-and-drop polish"]
    ring = laptop.page.evaluate("getComputedStyle(document.activeElement).boxShadow")
    assert ring and ring != "none"
    laptop.page.keyboard.press("Enter")
    laptop.page.get_by_test_id("card-dialog").wait_for()
    laptop.shot("dialog-from-keyboard")
    laptop.page.keyboard.press("Escape")
    laptop.assert_no_console_errors()
    phone.assert_no_console_errors()


def test_sign_in_by_pasting_a_token_then_pick_a_board(open_page, stack):
    alice, mallory = stack.user("alice"), stack.user("mallory")
    org = stack.organization((alice, "owner"))
    board = stack.board(org, alice, COLUMNS)
    board_id = board["board"]["id"]
    other = stack.board(stack.organization((mallory, "owner")), mallory, {"Secret": ["plans"]})
    p = open_page("alice")
    page = p.page

    # No fragment: the sign-in form. A bad token is refused with the server's reason.
    page.goto(f"{stack.page_url}/")
    page.get_by_test_id("signin").wait_for()
    p.shot("signin")
    page.get_by_test_id("signin-token").fill("not-a-token")
    page.get_by_test_id("signin-submit").click()
    page.get_by_test_id("signin-error").wait_for()
    assert "refused" in page.get_by_test_id("signin-error").inner_text()

    # A good token without a board: the picker, with the user's organization and role.
    page.get_by_test_id("signin-token").fill(alice.token)
    page.get_by_test_id("signin-submit").click()
    page.get_by_test_id("picker").wait_for()
    assert org in page.get_by_test_id("org-list").inner_text()
    assert "owner" in page.get_by_test_id("org-list").inner_text()
    # ... and the organization's boards from `list_boards`, never another organization's.
    listed = page.locator(f'[data-testid="org-board"][data-board-id="{board_id}"]')
    listed.wait_for()
    assert "Launch plan" in listed.inner_text()
    assert page.locator(f'[data-board-id="{other["board"]["id"]}"]').count() == 0
    p.shot("picker")

    # A board of another organization is refused; this one opens, and the token is not in the URL.
    page.get_by_test_id("picker-board").fill(other["board"]["id"])
    page.get_by_test_id("picker-open").click()
    page.get_by_test_id("picker-error").filter(has_text="do not have access").wait_for()
    page.get_by_test_id("picker-board").fill(board_id)
    page.get_by_test_id("picker-open").click()
    p.wait_for_layout(layout_of(board))
    assert page.evaluate("location.hash") == f"#board={board_id}"
    assert alice.token not in page.url

    # Back to the picker: the board is in "recent", and a reload keeps the session (this tab only).
    page.get_by_test_id("switch-board").click()
    page.locator(f'[data-testid="recent-board"][data-board-id="{board_id}"]').click()
    p.wait_for_layout(layout_of(board))
    page.reload()
    p.wait_for_layout(layout_of(board))

    # The organization's board list opens the board too.
    page.get_by_test_id("switch-board").click()
    page.locator(f'[data-testid="org-board"][data-board-id="{board_id}"]').click()
    p.wait_for_layout(layout_of(board))
    assert page.evaluate("location.hash") == f"#board={board_id}"
    page.get_by_test_id("sign-out").click()
    page.get_by_test_id("signin").wait_for()
    assert page.evaluate("sessionStorage.length") == 0
    p.assert_no_console_errors()


#: What Chromium itself logs for the requests that fail while the browser context is offline.
OFFLINE_ERRORS = re.compile(r"net::ERR_INTERNET_DISCONNECTED|WebSocket connection to .* failed")

PENDING_IN_INDEXEDDB = """() => new Promise((resolve) => {
    const open = indexedDB.open('liveboard-client');
    open.onsuccess = () => {
        const db = open.result;
        if (!db.objectStoreNames.contains('boards')) { resolve(0); return; }
        const all = db.transaction('boards').objectStore('boards').getAll();
        all.onsuccess = () => resolve(all.result.reduce((n, stored) => n + (stored.pending || []).length, 0));
    };
    open.onerror = () => resolve(-1);
})"""


def test_edits_made_offline_survive_a_reload_and_reach_postgres_exactly_once(open_page, stack):
    """The page runs on @liveboard/client: offline edits are queued in IndexedDB, the page itself
    reloads from its service worker, and the queue is replayed once the browser is online again."""
    alice, bob = stack.user("alice"), stack.user("bob")
    org = stack.organization((alice, "owner"), (bob, "member"))
    board = stack.board(org, alice, COLUMNS)
    board_id = board["board"]["id"]
    todo, doing, done = (c["id"] for c in board["columns"])
    a = open_page("alice").open(stack.page_url, alice, board_id)
    b = open_page("bob").open(stack.page_url, bob, board_id)
    for page in (a, b):
        page.wait_for_layout(layout_of(board))
    # The service worker has the page and its scripts (it controls the page once it is active).
    a.page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=10_000)

    a.page.context.set_offline(True)
    a.page.get_by_test_id("offline-banner").wait_for(state="visible", timeout=10_000)
    a.shot("offline")

    # Five edits while offline: three drags and two renames in the card dialog.
    cards = {c["title"]: c["id"] for c in board["cards"]}
    a.drag_to_end(cards["Sketch the onboarding flow"], doing)
    a.drag_to_end(cards["Presence avatars"], done)
    a.drag_to_end(cards["Socket.IO handshake"], todo)
    dialog = a.page.get_by_test_id("card-dialog")
    for title in ("Write release notes", "Drag-and-drop polish"):
        a.card(cards[title]).click()
        dialog.get_by_test_id("card-title-input").fill(f"{title} (offline)")
        dialog.get_by_test_id("card-save").click()
        dialog.wait_for(state="hidden")
    a.page.wait_for_function("window.liveboard.board.pending.length === 5")
    a.page.wait_for_function(f"({PENDING_IN_INDEXEDDB})().then((n) => n === 5)")
    op_ids = a.page.evaluate("window.liveboard.board.pending.map((op) => op.clientOpId)")
    shown = a.layout()
    assert shown != layout_of(board)
    a.shot("edited-offline")

    # A reload while still offline: the page comes from the service worker, the board and the
    # queued edits from IndexedDB.
    a.page.reload()
    a.page.get_by_test_id("board").wait_for(state="visible", timeout=10_000)
    a.wait_for_layout(shown)
    a.page.get_by_test_id("offline-banner").wait_for(state="visible", timeout=5_000)
    assert a.page.evaluate("window.liveboard.board.pending.length") == 5
    assert stack.snapshot(board_id, alice)["seq"] == board["seq"]  # nothing reached the server yet
    assert b.layout() == layout_of(board)
    a.shot("reloaded-offline")

    a.page.context.set_offline(False)
    a.page.get_by_test_id("offline-banner").wait_for(state="hidden", timeout=20_000)
    a.page.wait_for_function("window.liveboard.board.pending.length === 0", timeout=15_000)
    truth = stack.snapshot(board_id, alice)
    assert layout_of(truth) == shown
    a.wait_for_layout(shown)
    b.wait_for_layout(shown)
    status, body = stack.call("GET", f"{stack.boards_url}/v1/boards/{board_id}/events?since_seq=0", alice.token)
    assert status == 200, body
    by_op = [event.get("correlation_id") for event in body["events"]]
    for op_id in op_ids:
        assert by_op.count(op_id) == 1, op_id
    assert truth["seq"] == board["seq"] + 5
    a.shot("online-again")
    b.shot("sees-offline-edits")
    a.assert_no_console_errors(allow=OFFLINE_ERRORS)
    b.assert_no_console_errors()
