import HeraldApp
