"""The peer of the slack_gateway benchmark: a slack_bolt app (pip install slack_bolt)
verifying the same signed requests, served by Bolt's own HTTP server.

    python3 bench/slack_bolt_peer.py PORT SIGNING_SECRET
"""
import sys

from slack_bolt import App
from slack_bolt.authorization import AuthorizeResult


def authorize(enterprise_id, team_id, logger):
    # Known in advance, so Bolt does not call auth.test (out of reach here) per request.
    return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token="xoxb-benchmark",
                           bot_user_id="UBOT", bot_id="B1")


def main():
    port, secret = int(sys.argv[1]), sys.argv[2]
    app = App(signing_secret=secret, authorize=authorize)

    @app.event("message")
    def on_message(event):  # Bolt acknowledges events itself once the listener ran.
        return None

    print("ready", flush=True)
    # The benchmark stops reading stdout after "ready": Bolt's own banner goes elsewhere.
    sys.stdout = sys.stderr
    app.start(port=port, path="/slack/events")


if __name__ == "__main__":
    main()
