import HeraldPlugin

/// The chat notifier kinds this module provides, for registering them with Herald in one go.
public enum ChatNotifierKinds {
    /// Every kind: `slack`, `discord`, `teams`, `googlechat`, `mattermost`, `chatwork`,
    /// `line`, `telegram`, `webhook`.
    public static var all: [any NotifierPlugin.Type] {
        [
            SlackNotifier.self, DiscordNotifier.self, TeamsNotifier.self, GoogleChatNotifier.self,
            MattermostNotifier.self, ChatworkNotifier.self, LINENotifier.self, TelegramNotifier.self,
            WebhookNotifier.self,
        ]
    }
}
